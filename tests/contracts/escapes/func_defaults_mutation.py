# escape: rewrite a function's __defaults__ | source: Python sandbox tricks (mutating defaults)
@export
def attack():
    attack.__defaults__ = (1,)
    return 1
