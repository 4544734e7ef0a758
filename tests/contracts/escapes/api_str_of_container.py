# escape: str() of a container (repr of objects) | source: object leaks
data = Hash()
@export
def attack():
    return str([data])
