# escape: relative import | source: import system tricks
from . import x
@export
def attack():
    return x
