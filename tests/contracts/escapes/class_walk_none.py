# escape: class-hierarchy walk from None | source: pyjail write-ups (None.__class__)
@export
def attack():
    return None.__class__.__base__
