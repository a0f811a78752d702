"""What this machine is and can do: CPU, SIMD, memory, GPUs, execution providers, speed."""
