# escape: returning the storage object | source: object leaks
data = Hash()
@export
def attack():
    return data
