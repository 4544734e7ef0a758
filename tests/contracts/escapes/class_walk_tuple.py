# escape: class-hierarchy walk from a tuple to object.__subclasses__() | source: classic pyjail: ().__class__.__bases__[0].__subclasses__()
@export
def attack():
    return ().__class__.__bases__[0].__subclasses__()
