# escape: traceback frames from a caught exception | source: exception-object leaks (e.__traceback__.tb_frame)
@export
def attack():
    try:
        1 // 0
    except Exception as e:
        return e.__traceback__.tb_frame.f_globals
