# escape: storage object's private fields | source: API tampering
data = Hash()
@export
def attack():
    return data._key(('x',))
