"""The SD-card image: builder (build.py), first boot (firstboot.py), a synthetic image for tests."""
