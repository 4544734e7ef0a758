# escape: exception __context__ chain | source: exception-object leaks
@export
def attack():
    try:
        [][1]
    except IndexError as e:
        return e.__context__
