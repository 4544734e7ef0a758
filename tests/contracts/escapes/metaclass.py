# escape: class with a metaclass | source: metaclass escapes (type.__call__)
class M(type):
    pass
class C(metaclass=M):
    pass
@export
def attack():
    return 1
