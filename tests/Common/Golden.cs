using System.Text.Json.Nodes;

namespace Hub.Tests;

/// <summary>Helpers for reading golden.json files.</summary>
public static class Golden
{
    public static JsonObject Load(string path) => JsonNode.Parse(File.ReadAllText(path))!.AsObject();

    public static int[] Ints(JsonNode? n) => n!.AsArray().Select(x => (int)x!).ToArray();

    public static int[][] Ints2(JsonNode? n) => n!.AsArray().Select(Ints).ToArray();

    public static float[] Floats(JsonNode? n) => n!.AsArray().Select(x => (float)(double)x!).ToArray();

    /// <summary>Asserts |a-b| ≤ tol·max(1, |b|) elementwise, reporting the worst index.</summary>
    public static void Close(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, float tol, string what)
    {
        Assert.True(expected.Length == actual.Length, $"{what}: length {actual.Length}, expected {expected.Length}");
        float worst = 0; int at = -1;
        for (int i = 0; i < expected.Length; i++)
        {
            float err = MathF.Abs(expected[i] - actual[i]) / MathF.Max(1f, MathF.Abs(expected[i]));
            if (!(err <= worst)) { worst = err; at = i; }
        }
        Assert.True(worst <= tol, $"{what}: max error {worst:G4} at {at} (expected {(at >= 0 ? expected[at] : 0)}, got {(at >= 0 ? actual[at] : 0)})");
    }

    public static int ArgMax(ReadOnlySpan<float> row)
    {
        int best = 0;
        for (int i = 1; i < row.Length; i++) if (row[i] > row[best]) best = i;
        return best;
    }
}
