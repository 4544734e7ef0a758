# escape: nested f-string format spec with width bomb | source: format-spec DoS ('{:>999999999}')
@export
def attack():
    w = 10 ** 9
    return f'{1:>{w}}'
