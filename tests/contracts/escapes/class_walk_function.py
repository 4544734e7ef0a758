# escape: function object globals via __globals__ | source: RestrictedPython bypasses (f.__globals__['__builtins__'])
@export
def attack():
    return attack.__globals__
