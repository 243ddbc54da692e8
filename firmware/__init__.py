"""The BIOS, written in Python after SeaBIOS: POST, interrupt services and disk drivers."""
