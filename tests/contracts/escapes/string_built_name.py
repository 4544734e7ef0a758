# escape: build a dunder name from pieces and look it up in a dict | source: string-building bypasses
@export
def attack():
    d = {'a': 1}
    n = '_' + '_class_' + '_'
    return d[n]
