# escape: class-hierarchy walk from a str literal via __mro__ | source: pyjail write-ups ('a'.__class__.__mro__[-1])
@export
def attack():
    return ''.__class__.__mro__[-1].__subclasses__()
