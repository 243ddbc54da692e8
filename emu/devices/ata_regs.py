"""ATA (IDE) ports, registers, bits and commands, named as in SeaBIOS hw/ata.h (values
from the ATA-7 standard): the one place the device model (emu/devices/ata.py) and the
BIOS's driver (firmware/ata.py) take them from."""

# Legacy channels (hw/ata.h PORT_ATA*, IRQ_ATA*): command block base, control block base
# (its one register, device control / alternate status, is at +2), IRQ.
PORT_ATA1_CMD_BASE = 0x1F0
PORT_ATA1_CTRL_BASE = 0x3F4
PORT_ATA2_CMD_BASE = 0x170
PORT_ATA2_CTRL_BASE = 0x374
IRQ_ATA1 = 14
IRQ_ATA2 = 15

# Command block register offsets (from the command base) and the control block's.
ATA_CB_DATA = 0
ATA_CB_ERR = 1          # read
ATA_CB_FR = 1           # write
ATA_CB_SC = 2
ATA_CB_SN = 3           # sector number / LBA low
ATA_CB_CL = 4           # cylinder low / LBA mid
ATA_CB_CH = 5           # cylinder high / LBA high
ATA_CB_DH = 6           # device/head
ATA_CB_STAT = 7         # read
ATA_CB_CMD = 7          # write
ATA_CB_ASTAT = 2        # read, from the control base
ATA_CB_DC = 2           # write, from the control base

# Error register bits.
ATA_CB_ER_ICRC = 0x80
ATA_CB_ER_UNC = 0x40
ATA_CB_ER_WP = 0x40     # write commands / GET MEDIA STATUS: medium write protected
ATA_CB_ER_MC = 0x20
ATA_CB_ER_IDNF = 0x10
ATA_CB_ER_MCR = 0x08
ATA_CB_ER_ABRT = 0x04
ATA_CB_ER_NM = 0x02
ATA_CB_ER_AMNF = 0x01

# Device/head register bits.
ATA_CB_DH_DEV0 = 0xA0
ATA_CB_DH_DEV1 = 0xB0
ATA_CB_DH_LBA = 0x40
ATA_CB_DH_DEV1_BIT = 0x10

# Status register bits.
ATA_CB_STAT_BSY = 0x80
ATA_CB_STAT_RDY = 0x40
ATA_CB_STAT_DF = 0x20
ATA_CB_STAT_SKC = 0x10  # seek complete (DSC)
ATA_CB_STAT_DRQ = 0x08
ATA_CB_STAT_CORR = 0x04
ATA_CB_STAT_IDX = 0x02
ATA_CB_STAT_ERR = 0x01

# Device control bits.
ATA_CB_DC_HOB = 0x80
ATA_CB_DC_HD15 = 0x08
ATA_CB_DC_SRST = 0x04
ATA_CB_DC_NIEN = 0x02

# Commands.
ATA_CMD_NOP = 0x00
ATA_CMD_RECALIBRATE = 0x10                  # 10h-1Fh
ATA_CMD_READ_SECTORS = 0x20
ATA_CMD_READ_SECTORS_NORETRY = 0x21
ATA_CMD_READ_SECTORS_EXT = 0x24
ATA_CMD_WRITE_SECTORS = 0x30
ATA_CMD_WRITE_SECTORS_NORETRY = 0x31
ATA_CMD_WRITE_SECTORS_EXT = 0x34
ATA_CMD_READ_VERIFY_SECTORS = 0x40
ATA_CMD_READ_VERIFY_SECTORS_NORETRY = 0x41
ATA_CMD_READ_VERIFY_SECTORS_EXT = 0x42
ATA_CMD_SEEK = 0x70                         # 70h-7Fh
ATA_CMD_EXECUTE_DEVICE_DIAGNOSTIC = 0x90
ATA_CMD_INITIALIZE_DEVICE_PARAMETERS = 0x91
ATA_CMD_STANDBY_IMMEDIATE2 = 0x94
ATA_CMD_IDLE_IMMEDIATE2 = 0x95
ATA_CMD_STANDBY2 = 0x96
ATA_CMD_IDLE2 = 0x97
ATA_CMD_CHECK_POWER_MODE2 = 0x98
ATA_CMD_IDENTIFY_PACKET_DEVICE = 0xA1
ATA_CMD_GET_MEDIA_STATUS = 0xDA
ATA_CMD_STANDBY_IMMEDIATE = 0xE0
ATA_CMD_IDLE_IMMEDIATE = 0xE1
ATA_CMD_STANDBY = 0xE2
ATA_CMD_IDLE = 0xE3
ATA_CMD_CHECK_POWER_MODE = 0xE5
ATA_CMD_FLUSH_CACHE = 0xE7
ATA_CMD_FLUSH_CACHE_EXT = 0xEA
ATA_CMD_IDENTIFY_DEVICE = 0xEC
ATA_CMD_SET_FEATURES = 0xEF

# Where QEMU's CMOS keeps each ATA disk's geometry translation (SeaBIOS hw/rtc.h):
# 2 bits per disk, cntl_id 0-3, in byte 39h.
CMOS_BIOS_DISKTRANSFLAG = 0x39
