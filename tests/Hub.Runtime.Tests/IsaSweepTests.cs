using System.Diagnostics;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using System.Text;

namespace Hub.Runtime.Tests;

/// <summary>
/// Re-runs every <c>Category=Kernel</c> test of this assembly in child test hosts with the JIT's instruction sets
/// switched off (AVX-512 → AVX2 path; AVX-VNNI → the int8 kernels' AVX2 multiply; AVX2 → Vector128/SSE path; all
/// hardware intrinsics → scalar path), so the fallbacks that this machine would never take on its own are checked
/// against the naive references too.
/// </summary>
public class IsaSweepTests(Xunit.Abstractions.ITestOutputHelper output)
{
    // .NET 10 folds AVX512F+BW+CD+DQ+VL into one "EnableAVX512" knob and maps the older EnableAVX512F onto it; set both.
    private static readonly (string Name, string[] Variables)[] Paths =
    [
        ("no AVX-512 (AVX2 path)", ["DOTNET_EnableAVX512F", "DOTNET_EnableAVX512"]),
        ("no AVX-VNNI (int8 AVX2 multiply path)", ["DOTNET_EnableAVXVNNI"]),
        ("no AVX2 (Vector128/SSE path)", ["DOTNET_EnableAVX2"]),
        ("no hardware intrinsics (scalar path)", ["DOTNET_EnableHWIntrinsic"]),
    ];

    [SkippableFact]
    public void Kernel_tests_pass_on_every_instruction_set_path()
    {
        // A child sweep must not start another sweep.
        Skip.If(Environment.GetEnvironmentVariable("HUB_ISA_SWEEP_CHILD") == "1", "inside a sweep child");
        string dll = typeof(IsaSweepTests).Assembly.Location;
        var failures = new List<string>();
        foreach (var (name, variables) in Paths)
        {
            string variable = string.Join("=0 ", variables);
            var psi = new ProcessStartInfo("dotnet")
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            foreach (var a in new[] { "test", dll, "--filter", "Category=Kernel", "--nologo" }) psi.ArgumentList.Add(a);
            foreach (var v in variables) psi.Environment[v] = "0";
            psi.Environment["HUB_ISA_SWEEP_CHILD"] = "1";
            var sw = Stopwatch.StartNew();
            using var p = Process.Start(psi)!;
            var stdout = new StringBuilder();
            p.OutputDataReceived += (_, e) => { if (e.Data != null) lock (stdout) stdout.AppendLine(e.Data); };
            p.ErrorDataReceived += (_, e) => { if (e.Data != null) lock (stdout) stdout.AppendLine(e.Data); };
            p.BeginOutputReadLine(); p.BeginErrorReadLine();
            if (!p.WaitForExit(TimeSpan.FromMinutes(5))) { p.Kill(true); failures.Add($"{name} ({variable}=0): timed out"); continue; }
            p.WaitForExit();
            string text = stdout.ToString();
            string summary = text.Split('\n').LastOrDefault(l => l.Contains("Passed!") || l.Contains("Failed!"))?.Trim() ?? "(no summary)";
            output.WriteLine($"{name} ({variable}=0): exit {p.ExitCode} in {sw.Elapsed.TotalSeconds:F1} s: {summary}");
            // A filter that matched nothing also exits 0: insist on passed tests.
            if (p.ExitCode != 0 || !text.Contains("Passed!"))
                failures.Add($"{name} ({variable}=0): exit code {p.ExitCode}\n{Tail(text, 60)}");
        }
        if (failures.Count > 0) Assert.Fail("kernel tests failed on instruction-set path(s):\n" + string.Join("\n\n", failures));
    }

    private static string Tail(string text, int lines)
    {
        var all = text.Split('\n');
        return string.Join('\n', all.Skip(Math.Max(0, all.Length - lines)));
    }
}

/// <summary>Proves the sweep's environment switches really change the paths the JIT enables in the child.</summary>
[Trait("Category", "Kernel")]
public class IsaEnvironmentTests
{
    [Fact]
    public void Disabled_instruction_sets_are_reported_unsupported()
    {
        if (Environment.GetEnvironmentVariable("DOTNET_EnableAVX512F") == "0" || Environment.GetEnvironmentVariable("DOTNET_EnableAVX512") == "0")
        {
            Assert.False(Avx512F.IsSupported);
            Assert.False(Vector512.IsHardwareAccelerated);
        }
        if (Environment.GetEnvironmentVariable("DOTNET_EnableAVXVNNI") == "0") Assert.False(AvxVnni.IsSupported);
        if (Environment.GetEnvironmentVariable("DOTNET_EnableAVX2") == "0") { Assert.False(Avx2.IsSupported); Assert.False(Vector256.IsHardwareAccelerated); }
        if (Environment.GetEnvironmentVariable("DOTNET_EnableHWIntrinsic") == "0") { Assert.False(Sse.IsSupported); Assert.False(Vector128.IsHardwareAccelerated); }
        Assert.Contains(CpuInfo.GemmPath, CpuInfo.Describe());
    }
}
