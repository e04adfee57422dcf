"""Build and check voice packs: the kiosk's prompts recorded by a native speaker (docs/voice.md).

    .venv/bin/python tools/voice_pack.py template DIR --lang bo     # what to record, as a list
    .venv/bin/python tools/voice_pack.py build DIR --name NAME --out PACK.tar
    .venv/bin/python tools/voice_pack.py check PACK                 # archive or folder

DIR holds one PCM WAV a prompt: DIR/bo/scan.wav, DIR/bo/number_12.wav, DIR/bo/unit_yuan.wav …
(the ids of cabinet/ui/static/strings.json, the numbers 0-99 and 100-900, and the units).
`build` writes DIR/manifest.json with each clip's sha256, checks the pack whole (what is missing
or corrupt is listed, and nothing is written to --out then) and writes the archive, printing its
sha256: upload it to the backend and send the cabinets `set_voice_pack {url, sha256}`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cabinet.voice_pack import (LANGUAGES, STRINGS, archive, build,  # noqa: E402
                                check_pack, required_ids)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    verbs = p.add_subparsers(dest="verb", required=True)
    template = verbs.add_parser("template", help="list every clip a language needs, with its text")
    template.add_argument("dir", type=Path)
    template.add_argument("--lang", choices=LANGUAGES, required=True)
    made = verbs.add_parser("build", help="manifest, check and archive a folder of clips")
    made.add_argument("dir", type=Path)
    made.add_argument("--name", required=True)
    made.add_argument("--out", type=Path, required=True)
    checked = verbs.add_parser("check", help="what a pack lacks against this software")
    checked.add_argument("pack", type=Path)
    args = p.parse_args(argv)
    strings = json.loads(STRINGS.read_text(encoding="utf-8"))
    if args.verb == "template":
        for clip in required_ids(strings):
            text = strings.get(clip, {}).get(args.lang) or clip.replace("_", " ")
            print(f"{args.dir / args.lang / (clip + '.wav')}\t{text}")
        return 0
    if args.verb == "build":
        build(args.dir, args.name)
        problems, _ = check_pack(args.dir, strings)
    else:
        problems, manifest = check_pack(args.pack, strings)
    if problems:
        print(f"{len(problems)} problem(s):")
        for problem in problems:
            print(f"  {problem}")
        return 1
    if args.verb == "build":
        print(f"{args.out}: sha256 {archive(args.dir, args.out)}")
    else:
        print(f"{args.pack}: complete ({', '.join(manifest['languages'])}, "
              f"{len(manifest['clips'])} clips)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
