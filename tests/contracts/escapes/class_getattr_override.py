# escape: class overriding __getattr__ | source: RestrictedPython guard bypass via __getattr__
class C:
    def __getattr__(self, n):
        return n
@export
def attack():
    return C().x
