# escape: import os | source: plain import
import os
@export
def attack():
    return os.getcwd()
