# escape: object.__subclasses__ | source: pyjail write-ups
@export
def attack():
    return object.__subclasses__()
