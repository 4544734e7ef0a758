# escape: license() file read | source: pyjail write-ups (license._Printer__filenames)
@export
def attack():
    return license()
