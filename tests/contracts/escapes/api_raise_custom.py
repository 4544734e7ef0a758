# escape: raise statement | source: exception tricks
@export
def attack():
    raise ValueError('x')
