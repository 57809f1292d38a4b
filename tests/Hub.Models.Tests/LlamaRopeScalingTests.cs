using System.Text.Json.Nodes;
using Hub.IR;
using Hub.Models.Llama;

namespace Hub.Models.Tests;

/// <summary>
/// The Rope op configured from a LLaMA config (<see cref="LlamaConfig.RopeAttributes"/>) against transformers'
/// modeling_rope_utils formulas, recomputed here in float64.
/// </summary>
public class LlamaRopeScalingTests
{
    public static TheoryData<string> Runners => LlamaGoldenTests.Runners;

    private static LlamaConfig Config(int headDim, double theta, JsonObject? scaling)
    {
        var o = new JsonObject
        {
            ["model_type"] = "llama", ["vocab_size"] = 10, ["hidden_size"] = headDim, ["intermediate_size"] = 8,
            ["num_hidden_layers"] = 1, ["num_attention_heads"] = 1, ["max_position_embeddings"] = 4096, ["rope_theta"] = theta,
        };
        if (scaling is not null) o["rope_scaling"] = scaling;
        return LlamaConfig.Read(new ConfigReader(o, "config.json"));
    }

    /// <summary>Runs one Rope node over x [1, T, hd] at <paramref name="positions"/>.</summary>
    private static float[] Rope(string kind, LlamaConfig cfg, float[] x, int[] positions)
    {
        var b = new GraphBuilder("llama");
        var xi = b.Input("x", DType.F32, 1, "seq", cfg.HeadDim);
        var pi = b.Input("positions", DType.I32, 1, "seq");
        var y = b.Op(Ops.Rope, "rope", [xi, pi], cfg.RopeAttributes(1));
        b.Output(y, DType.F32, 1, "seq", cfg.HeadDim);
        using var r = LlamaGoldenTests.Runner(kind, b.Build());
        return r.Run("rope", new LlamaInput("x", [1, positions.Length, cfg.HeadDim], F: x), new LlamaInput("positions", [1, positions.Length], I: positions));
    }

    /// <summary>rotate_half RoPE in float64 with the given inverse frequencies.</summary>
    private static double[] Expected(float[] x, int[] positions, double[] invFreq, int hd)
    {
        var y = new double[x.Length];
        int r = hd / 2;
        for (int t = 0; t < positions.Length; t++)
            for (int j = 0; j < r; j++)
            {
                double a = positions[t] * invFreq[j], c = Math.Cos(a), s = Math.Sin(a);
                y[t * hd + j] = x[t * hd + j] * c - x[t * hd + j + r] * s;
                y[t * hd + j + r] = x[t * hd + j + r] * c + x[t * hd + j] * s;
            }
        return y;
    }

    private static double[] DefaultInvFreq(double theta, int hd) =>
        Enumerable.Range(0, hd / 2).Select(i => 1.0 / Math.Pow(theta, 2.0 * i / hd)).ToArray();

    private static float[] RandomX(int n, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
    }

    private static void AssertClose(double[] expected, float[] actual, double tol)
    {
        Assert.Equal(expected.Length, actual.Length);
        double worst = expected.Select((e, i) => Math.Abs(e - actual[i])).Max();
        Assert.True(worst <= tol, $"max abs error {worst:g3} > {tol}");
    }

    [Theory]
    [MemberData(nameof(Runners))]
    public void Linear_scaling_divides_positions_by_the_factor(string kind)
    {
        const int hd = 16;
        var x = RandomX(4 * hd, 1);
        var scaled = Rope(kind, Config(hd, 10000, new JsonObject { ["type"] = "linear", ["factor"] = 4.0 }), x, [0, 4, 40, 200]);
        var plain = Rope(kind, Config(hd, 10000, null), x, [0, 1, 10, 50]);
        AssertClose(Array.ConvertAll(plain, v => (double)v), scaled, 1e-5);
        AssertClose(Expected(x, [0, 4, 40, 200], DefaultInvFreq(10000, hd).Select(f => f / 4).ToArray(), hd), scaled, 1e-4);
    }

    [Theory]
    [MemberData(nameof(Runners))]
    public void Llama3_scaling_matches_transformers_frequencies(string kind)
    {
        const int hd = 128;
        const double theta = 500000, factor = 8, lo = 1, hi = 4, original = 8192;
        var cfg = Config(hd, theta, new JsonObject
        {
            ["rope_type"] = "llama3", ["factor"] = factor, ["low_freq_factor"] = lo, ["high_freq_factor"] = hi,
            ["original_max_position_embeddings"] = (int)original,
        });
        // transformers' _compute_llama3_parameters, in float64.
        double lowWave = original / lo, highWave = original / hi;
        int regimes = 0;
        var inv = DefaultInvFreq(theta, hd).Select(f =>
        {
            double wave = 2 * Math.PI / f;
            double scaled = wave > lowWave ? f / factor : f;
            bool medium = !(wave < highWave) && !(wave > lowWave);
            if (medium)
            {
                double smooth = (original / wave - lo) / (hi - lo);
                scaled = (1 - smooth) * scaled / factor + smooth * scaled;
            }
            regimes |= wave < highWave ? 1 : medium ? 2 : 4;
            return scaled;
        }).ToArray();
        Assert.Equal(7, regimes); // high, medium and low frequencies are all exercised
        int[] positions = [0, 1, 37, 150];
        var x = RandomX(positions.Length * hd, 2);
        AssertClose(Expected(x, positions, inv, hd), Rope(kind, cfg, x, positions), 1e-4);
        // And it differs from unscaled RoPE, so the check has teeth.
        Assert.True(Expected(x, positions, DefaultInvFreq(theta, hd), hd).Zip(Rope(kind, cfg, x, positions)).Max(p => Math.Abs(p.First - p.Second)) > 1e-2);
    }

    [Theory]
    [MemberData(nameof(Runners))]
    public void Dynamic_scaling_leaves_short_sequences_alone(string kind)
    {
        const int hd = 16;
        var cfg = Config(hd, 10000, new JsonObject { ["type"] = "dynamic", ["factor"] = 2.0, ["original_max_position_embeddings"] = 64 });
        int[] positions = [0, 5, 30, 63];
        var x = RandomX(positions.Length * hd, 3);
        AssertClose(Expected(x, positions, DefaultInvFreq(10000, hd), hd), Rope(kind, cfg, x, positions), 1e-4);
    }

    [Theory]
    [MemberData(nameof(Runners))]
    public void Dynamic_scaling_raises_theta_for_sequences_beyond_the_original_context(string kind)
    {
        const int hd = 16, original = 64, seq = 100;
        const double factor = 2;
        var cfg = Config(hd, 10000, new JsonObject { ["type"] = "dynamic", ["factor"] = factor, ["original_max_position_embeddings"] = original });
        var positions = Enumerable.Range(0, seq).ToArray();
        var x = RandomX(seq * hd, 4);
        // transformers' _compute_dynamic_ntk_parameters with seq_len = max position + 1.
        double theta = 10000 * Math.Pow(factor * seq / original - (factor - 1), hd / (hd - 2.0));
        AssertClose(Expected(x, positions, DefaultInvFreq(theta, hd), hd), Rope(kind, cfg, x, positions), 1e-4);
    }
}
