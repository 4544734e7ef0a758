# escape: __reduce__ to smuggle a callable | source: pickle RCE technique
class C:
    def __reduce__(self):
        return (print, ('x',))
@export
def attack():
    return 1
