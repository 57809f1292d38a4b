// Statistics shared by the benchmark programs (bench/*) and the CLI's bench commands; compiled into each of them as a
// linked source file so none depends on another's assembly.
namespace Hub.Benchmarks;

/// <summary>Summary statistics of repeated timings.</summary>
internal static class BenchStats
{
    /// <summary>Median of <paramref name="xs"/> (mean of the middle two for an even count; 0 when empty).</summary>
    public static double Median(IEnumerable<double> xs)
    {
        var a = xs.Order().ToArray();
        return a.Length == 0 ? 0 : a.Length % 2 == 1 ? a[a.Length / 2] : (a[a.Length / 2 - 1] + a[a.Length / 2]) / 2;
    }
}
