# escape: std import under another name | source: alias smuggling
from std import digest as getattr
@export
def attack():
    return getattr
