# escape: inspect.stack() | source: frame inspection escapes
import inspect
@export
def attack():
    return inspect.stack()
