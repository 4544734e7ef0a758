# escape: import inside a function | source: plain import
@export
def attack():
    import sys
    return sys.modules
