# escape: calling a non-whitelisted method | source: attribute probing
@export
def attack():
    return 'x'.zfill(10 ** 9)
