"""The kiosk's cue sounds (WAV) and the script that makes them."""
