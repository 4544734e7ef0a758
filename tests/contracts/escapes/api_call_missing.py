# escape: calling a contract that does not exist | source: cross-contract call abuse
@export
def attack():
    return call('0000000000000000000000000000000000000000', 'x')
