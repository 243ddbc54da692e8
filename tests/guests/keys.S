# keys: INT 16h. After "KEYS READY" it polls AH=01 until a key is waiting,
# takes it with AH=00 (which must return what AH=01 showed) and echoes scan
# code and ASCII on COM1, until Enter. Then the buffer must be empty, and
# AH=02's shift/ctrl/alt bits (the lock bits are left out: they depend on the
# BIOS's defaults) are printed. The harness types the keys (build.KEYS).

        .include "lib.inc"

main:
        PUTLN "KEYS START"
        PUTLN "KEYS READY"
1:      movb $0x01, %ah
        int $0x16
        jz 1b                           # ZF=1: nothing waiting
        movw %ax, %si
        movb $0x00, %ah
        int $0x16
        cmpw %si, %ax
        je 2f
        DIE "AH01 PEEK DIFFERS FROM AH00"
2:      PUTS "KEY SCAN="
        xchgb %al, %ah
        call hex8
        PUTS " ASCII="
        xchgb %al, %ah
        call hex8
        call newline
        cmpb $0x0D, %al
        jne 1b

        movb $0x01, %ah
        int $0x16
        jz 1f
        DIE "AH01 BUFFER NOT EMPTY"
1:      PUTLN "AH01 BUFFER EMPTY OK"

        movb $0x02, %ah
        int $0x16
        andb $0x0F, %al                 # right/left shift, ctrl, alt
        PUTS "AH02 SHIFT CTRL ALT="
        call hex8
        call newline
        testb %al, %al
        jz 1f
        DIE "AH02 MODIFIERS STILL DOWN"
1:      PUTLN "PASS"
        EXIT 0
