# escape: class-hierarchy walk from an int | source: pyjail write-ups ((1).__class__.__base__)
@export
def attack():
    return (1).__class__.__base__.__subclasses__()
