# escape: emitting a non-codec value | source: object leaks
@export
def attack():
    emit('E', attack)
    return 1
