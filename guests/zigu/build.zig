//! zigu build:
//!   zig build                 -> zig-out/bin/zigu.elf (PVH kernel) + zig-out/lib/libzigu_abi.so
//!   zig build test            -> unit tests of the ABI (prints "zig: N passed, M failed")
//!   zig build -Doptimize=...  -> kernel optimisation (default ReleaseSmall: ring 0 is emulated)
const std = @import("std");

pub fn build(b: *std.Build) void {
    const optimize = b.option(std.builtin.Optimize, "optimize", "kernel optimize mode") orelse .small;
    const host = b.standardTargetOptions(.{});

    // Ring-0 code must be SSE/x87/MMX-free: PVM's ring-0 emulator stops on SSE.
    var sub = std.Target.Cpu.Feature.Set.empty;
    var add = std.Target.Cpu.Feature.Set.empty;
    inline for (.{ .mmx, .sse, .sse2, .sse3, .ssse3, .sse4_1, .sse4_2, .avx, .avx2, .avx512f, .x87 }) |f|
        sub.addFeature(@intFromEnum(@as(std.Target.x86.Feature, f)));
    add.addFeature(@intFromEnum(std.Target.x86.Feature.soft_float));
    const kernel_target = b.resolveTargetQuery(.{
        .cpu_arch = .x86_64,
        .os_tag = .freestanding,
        .abi = .none,
        .cpu_model = .{ .explicit = &std.Target.x86.cpu.x86_64 },
        .cpu_features_sub = sub,
        .cpu_features_add = add,
    });

    const kmod = b.createModule(.{
        .root_source_file = b.path("kernel/main.zig"),
        .target = kernel_target,
        .optimize = optimize,
        .red_zone = false,
        .stack_check = false,
        .stack_protector = false,
        .pic = false,
        .code_model = .small,
        .omit_frame_pointer = true,
    });
    const kernel = b.addExecutable(.{
        .name = "zigu.elf",
        .root_module = kmod,
        .use_llvm = true,
        .use_lld = true,
    });
    kernel.setLinkerScript(b.path("kernel/linker.ld"));
    kernel.entry = .{ .symbol_name = "_start32" };
    kernel.pie = false;
    b.installArtifact(kernel);

    // The same abi.zig, built for the host as a shared library loaded with ctypes.
    const hmod = b.createModule(.{
        .root_source_file = b.path("kernel/hostlib.zig"),
        .target = host,
        .optimize = .fast,
    });
    const lib = b.addLibrary(.{ .name = "zigu_abi", .root_module = hmod, .linkage = .dynamic });
    b.installArtifact(lib);

    const tmod = b.createModule(.{
        .root_source_file = b.path("kernel/abi.zig"),
        .target = host,
        .optimize = .debug,
    });
    const tests = b.addTest(.{
        .root_module = tmod,
        .test_runner = .{ .path = b.path("kernel/test_runner.zig"), .mode = .simple },
    });
    const run_tests = b.addRunArtifact(tests);
    run_tests.stdio = .inherit;
    const hl_tmod = b.createModule(.{
        .root_source_file = b.path("kernel/hostlib.zig"),
        .target = host,
        .optimize = .debug,
    });
    const hl_tests = b.addTest(.{
        .name = "hostlib-test",
        .root_module = hl_tmod,
        .test_runner = .{ .path = b.path("kernel/test_runner.zig"), .mode = .simple },
    });
    const run_hl = b.addRunArtifact(hl_tests);
    run_hl.stdio = .inherit;
    const test_step = b.step("test", "Run the ABI unit tests");
    test_step.dependOn(&run_tests.step);
    test_step.dependOn(&run_hl.step);
}
