"""INT 14h and INT 17h: the serial port and the absent printer."""



from tests.firmware.services import EXIT_OK_OR_FAIL, OUT, assert_exit_ok, words


def test_serial_send_receive_and_printer_absent(boot):
    source = f"""
        mov ax, 0x00e3              # 9600 8N1
        xor dx, dx
        int 0x14
        mov ax, 0x015a              # send 'Z'
        xor dx, dx
        int 0x14
        mov [{OUT}], ax
        mov ah, 2
        xor dx, dx
        int 0x14
        mov [{OUT + 2}], ax         # 'Q' from the line
        mov ah, 2
        xor dx, dx
        int 0x14
        mov [{OUT + 4}], ax         # nothing more: time-out
        mov ah, 3
        mov dx, 4
        clc
        int 0x14
        jnc fail                    # no COM5
        mov ax, 0x0141
        xor dx, dx
        clc
        int 0x17
        jnc fail
        mov [{OUT + 6}], ax
    """ + EXIT_OK_OR_FAIL
    machine, _bios, stop, _ = boot(source, serial=b"Q")
    assert_exit_ok(stop)
    sent, received, timeout, printer = words(machine.mem, OUT, 4)
    assert bytes(machine.console) == b"Z"
    assert sent >> 8 & 0x80 == 0
    assert received & 0xFF == ord("Q") and not received & 0x8000
    assert timeout & 0x8000
    assert printer >> 8 & 0x01 and not printer >> 8 & 0x10      # timed out, not selected


# -- how a call reaches the service ------------------------------------------------------
