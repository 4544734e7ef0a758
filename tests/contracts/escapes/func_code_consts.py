# escape: code object constants via __code__.co_consts | source: CTF 'co_consts' leaks
@export
def attack():
    return attack.__code__.co_consts
