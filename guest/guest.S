/*
 * livemig test guest: a tiny x86 guest that dirties memory at a chosen rate.
 *
 * Boots from a raw disk image under SeaBIOS (KVM or TCG), enters 32-bit protected mode, and
 * then, 1000 times a second on the PIT timer interrupt, dirties pages of its working set:
 * it sweeps the set in order and increments the first byte of one page at a time. Between
 * ticks the CPU halts, so an idle guest costs almost nothing.
 *
 * Memory pattern (what livemig.hypervisor.guest_memory checks): page i of the working set
 * lives at 0x100000 + i*4096. Reading the first byte of every page in order gives v...v
 * followed by v-1...v-1 (mod 256): at most one place where the value steps down, and only
 * by one. Anything else is a lost or stale page.
 *
 * Parameters: the block at PARAMS (offset 0x200 in the image) holds the working set in pages
 * and the dirty rate in pages per second; the host patches a copy of the image per VM. While
 * the guest runs, the serial console (COM1) takes commands, each ending in a newline:
 *     R<n>   set the dirty rate to n pages per second
 *     W<n>   set the working set to n pages (re-initialises the pattern)
 * and answers each with "R<rate> W<pages>\n". At boot it prints "LIVEMIG R<rate> W<pages>\n",
 * writes every page once, prints "READY\n", and then prints "H\n" once a second.
 *
 * Build: see guest/Makefile (GNU as + ld, flat binary linked at 0x7c00).
 */

        .intel_syntax noprefix

        .set COM1, 0x3f8
        .set WS_BASE, 0x100000
        .set HZ, 1000
        .set PIT_DIVISOR, 1193          /* 1193182 Hz / 1193 ~= 1000 Hz */
        .set STAGE2_SECTORS, 3
        .set STACK_TOP, 0x90000

        .section .text
        .code16
        .globl _start
_start:
        cli
        xor ax, ax
        mov ds, ax
        mov es, ax
        mov ss, ax
        mov sp, 0x7c00
        mov [boot_drive], dl

        /* Load stage 2 (the sectors after this one) to 0x7e00 with BIOS int 13h. */
        mov ah, 0x02
        mov al, STAGE2_SECTORS
        mov ch, 0
        mov cl, 2
        mov dh, 0
        mov dl, [boot_drive]
        mov bx, 0x7e00
        int 0x13
        jc disk_error

        /* Fast A20, then into protected mode. */
        in al, 0x92
        or al, 2
        and al, 0xfe
        out 0x92, al

        lgdt [gdt_descriptor]
        mov eax, cr0
        or eax, 1
        mov cr0, eax
        ljmp 0x08, offset protected_mode

disk_error:
        mov si, offset disk_error_msg
1:      lodsb
        test al, al
        jz 2f
        mov dx, COM1
        out dx, al
        jmp 1b
2:      hlt
        jmp 2b

disk_error_msg: .asciz "LIVEMIG disk error\n"
boot_drive:     .byte 0

        .p2align 3
gdt:
        .quad 0x0000000000000000
        .quad 0x00cf9a000000ffff        /* 0x08: code, base 0, 4 GiB, 32-bit */
        .quad 0x00cf92000000ffff        /* 0x10: data, base 0, 4 GiB */
gdt_descriptor:
        .word gdt_descriptor - gdt - 1
        .long gdt

        .org 510
        .byte 0x55, 0xaa

/* ---- sector 2: the parameter block, patched by the host ------------------------------- */
        .org 512
PARAMS:
        .ascii "LMGP"                   /* magic */
ws_pages:       .long 4096              /* working set, pages (16 MiB) */
rate_pps:       .long 0                 /* dirty rate, pages per second */

/* ---- stage 2: 32-bit code ------------------------------------------------------------- */
        .code32
protected_mode:
        mov ax, 0x10
        mov ds, ax
        mov es, ax
        mov fs, ax
        mov gs, ax
        mov ss, ax
        mov esp, STACK_TOP

        call serial_init
        call idt_init
        call pic_init
        call pit_init

        mov esi, offset banner
        call puts
        call print_params

        call fill_working_set
        mov esi, offset ready_msg
        call puts

        sti
idle:
        hlt
        jmp idle

/* Timer interrupt: dirty pages, read commands, heartbeat. */
timer_isr:
        pushad
        mov eax, [rate_pps]
        add [accumulator], eax
dirty_loop:
        cmp dword ptr [accumulator], HZ
        jb dirty_done
        sub dword ptr [accumulator], HZ
        call dirty_one
        jmp dirty_loop
dirty_done:
        call serial_poll
        inc dword ptr [ticks]
        cmp dword ptr [ticks], HZ
        jb 1f
        mov dword ptr [ticks], 0
        mov esi, offset heartbeat
        call puts
1:      mov al, 0x20                    /* end of interrupt */
        out 0x20, al
        popad
        iretd

/* Other interrupts (only spurious ones can arrive: everything else is masked). */
ignore_isr:
        iretd

/* Increment the first byte of the page under the cursor, then move the cursor on. */
dirty_one:
        mov ecx, [ws_pages]
        test ecx, ecx
        jz 1f
        mov eax, [cursor]
        mov edx, eax
        shl edx, 12
        inc byte ptr [WS_BASE + edx]
        inc eax
        cmp eax, ecx
        jb 2f
        xor eax, eax
2:      mov [cursor], eax
1:      ret

/* Give every page of the working set the value of page 0 and restart the sweep. */
fill_working_set:
        mov ecx, [ws_pages]
        mov al, [WS_BASE]
        test al, al
        jnz 1f
        mov al, 1                       /* a page with one non-zero byte is real data */
1:      xor edx, edx
2:      cmp edx, ecx
        jae 3f
        mov ebx, edx
        shl ebx, 12
        mov [WS_BASE + ebx], al
        inc edx
        jmp 2b
3:      mov dword ptr [cursor], 0
        ret

/* ---- serial console ------------------------------------------------------------------- */
serial_init:
        mov dx, COM1 + 1
        xor al, al
        out dx, al                      /* no UART interrupts: we poll */
        mov dx, COM1 + 3
        mov al, 0x80
        out dx, al                      /* DLAB on */
        mov dx, COM1
        mov al, 1
        out dx, al                      /* 115200 baud */
        mov dx, COM1 + 1
        xor al, al
        out dx, al
        mov dx, COM1 + 3
        mov al, 0x03
        out dx, al                      /* 8N1, DLAB off */
        mov dx, COM1 + 2
        mov al, 0x07
        out dx, al                      /* FIFO on, cleared */
        ret

putc:                                   /* al = character */
        push edx
        push eax
        mov dx, COM1 + 5
1:      in al, dx
        test al, 0x20
        jz 1b
        pop eax
        mov dx, COM1
        out dx, al
        pop edx
        ret

puts:                                   /* esi = NUL-terminated string */
        push eax
1:      lodsb
        test al, al
        jz 2f
        call putc
        jmp 1b
2:      pop eax
        ret

print_dec:                              /* eax = unsigned number */
        push ebx
        push ecx
        push edx
        mov ebx, 10
        xor ecx, ecx
1:      xor edx, edx
        div ebx
        push edx
        inc ecx
        test eax, eax
        jnz 1b
2:      pop eax
        add al, '0'
        call putc
        loop 2b
        pop edx
        pop ecx
        pop ebx
        ret

print_params:                           /* "R<rate> W<pages>\n" */
        mov al, 'R'
        call putc
        mov eax, [rate_pps]
        call print_dec
        mov al, ' '
        call putc
        mov al, 'W'
        call putc
        mov eax, [ws_pages]
        call print_dec
        mov al, '\n'
        call putc
        ret

/* Read every waiting character; apply a command at the end of its line. */
serial_poll:
        mov dx, COM1 + 5
        in al, dx
        test al, 1
        jz 9f
        mov dx, COM1
        in al, dx
        cmp al, 'R'
        je 1f
        cmp al, 'W'
        je 1f
        cmp al, '\n'
        je 3f
        cmp al, '\r'
        je 3f
        cmp al, '0'
        jb serial_poll
        cmp al, '9'
        ja serial_poll
        movzx eax, al                   /* number = number * 10 + digit */
        sub eax, '0'
        mov ecx, eax
        mov eax, [cmd_value]
        mov ebx, 10
        mul ebx
        add eax, ecx
        mov [cmd_value], eax
        jmp serial_poll
1:      mov [cmd_letter], al
        mov dword ptr [cmd_value], 0
        jmp serial_poll
3:      mov al, [cmd_letter]
        mov byte ptr [cmd_letter], 0
        cmp al, 'R'
        jne 4f
        mov eax, [cmd_value]
        mov [rate_pps], eax
        mov dword ptr [accumulator], 0
        call print_params
        jmp serial_poll
4:      cmp al, 'W'
        jne serial_poll
        mov eax, [cmd_value]
        mov [ws_pages], eax
        call fill_working_set
        call print_params
        jmp serial_poll
9:      ret

/* ---- interrupts ----------------------------------------------------------------------- */
idt_init:                               /* every vector -> ignore_isr, IRQ0 (0x20) -> timer */
        mov edi, offset idt
        xor ecx, ecx
1:      mov eax, offset ignore_isr
        cmp ecx, 0x20
        jne 2f
        mov eax, offset timer_isr
2:      mov [edi], ax                   /* offset 15:0 */
        mov word ptr [edi + 2], 0x08    /* code selector */
        mov word ptr [edi + 4], 0x8e00  /* present, ring 0, 32-bit interrupt gate */
        shr eax, 16
        mov [edi + 6], ax               /* offset 31:16 */
        add edi, 8
        inc ecx
        cmp ecx, 256
        jb 1b
        lidt [idt_descriptor]
        ret

pic_init:                               /* remap to 0x20/0x28, mask all but IRQ0 */
        mov al, 0x11
        out 0x20, al
        out 0xa0, al
        mov al, 0x20
        out 0x21, al
        mov al, 0x28
        out 0xa1, al
        mov al, 0x04
        out 0x21, al
        mov al, 0x02
        out 0xa1, al
        mov al, 0x01
        out 0x21, al
        out 0xa1, al
        mov al, 0xfe
        out 0x21, al
        mov al, 0xff
        out 0xa1, al
        ret

pit_init:                               /* channel 0, mode 2, ~1000 Hz */
        mov al, 0x34
        out 0x43, al
        mov ax, PIT_DIVISOR
        out 0x40, al
        mov al, ah
        out 0x40, al
        ret

/* ---- data ----------------------------------------------------------------------------- */
banner:         .asciz "LIVEMIG "
ready_msg:      .asciz "READY\n"
heartbeat:      .asciz "H\n"

        .p2align 2
accumulator:    .long 0
ticks:          .long 0
cursor:         .long 0
cmd_value:      .long 0
cmd_letter:     .byte 0

        .p2align 3
idt_descriptor:
        .word 256 * 8 - 1
        .long idt

        .org 512 * (1 + STAGE2_SECTORS) - 1
        .byte 0
        /* The IDT lives right after the image in memory (0x7c00 + 2048); it is built at run
           time, so it takes no space in the image. */
        .set idt, 0x7c00 + 512 * (1 + STAGE2_SECTORS)
