"""Who may open the cabinet, and why not: signed access codes (codes.py); faces come later."""
