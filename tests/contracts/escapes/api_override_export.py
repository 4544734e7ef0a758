# escape: rebinding export | source: API tampering
export = 1
@export
def attack():
    return 1
