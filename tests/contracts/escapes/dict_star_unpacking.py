# escape: ** unpacking in a dict display | source: allocation tricks
@export
def attack():
    a = {'x': 1}
    return {**a}
