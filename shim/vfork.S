/* vfork(): the child shares the parent's memory, so it must never touch
 * the shim's table.  The child runs with the guard held (shim_vfork_child),
 * which sends all its calls straight through; the parent releases it when
 * it resumes (shim_vfork_parent).  Like glibc's own vfork, the return
 * address is kept in a register: the child's calls would overwrite it on
 * the shared stack. */
    .text
    .globl vfork
    .type vfork, @function
vfork:
    .cfi_startproc
    popq %rdi
    .cfi_adjust_cfa_offset -8
    movl $58, %eax          /* SYS_vfork */
    syscall
    pushq %rdi
    .cfi_adjust_cfa_offset 8
    cmpq $-4095, %rax
    jae 1f
    testl %eax, %eax
    jnz 2f
    jmp shim_vfork_child    /* child: returns 0 */
2:  movl %eax, %edi
    jmp shim_vfork_parent   /* parent: returns the pid */
1:  movq %rax, %rdi
    jmp shim_vfork_failed   /* returns -1 with errno set */
    .cfi_endproc
    .size vfork, .-vfork
    .section .note.GNU-stack,"",@progbits
