# escape: std import of a name it does not offer | source: module attribute probing
from std import os
@export
def attack():
    return os
