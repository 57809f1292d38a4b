using Hub.Models.Llama;
using Hub.Weights;

namespace Hub.Models.Tests;

/// <summary>The math behind <see cref="LlamaWeightLayout"/>, checked in float64.</summary>
public class LlamaRopePermutationTests
{
    private const int Heads = 3, HeadDim = 8, Dim = 5;

    private static double[] InterleavedRope(double[] x, int pos, double theta)
    {
        var y = (double[])x.Clone();
        for (int h = 0; h < x.Length / HeadDim; h++)
            for (int j = 0; j < HeadDim / 2; j++)
            {
                double a = pos * Math.Pow(theta, -2.0 * j / HeadDim), c = Math.Cos(a), s = Math.Sin(a);
                int i0 = h * HeadDim + 2 * j, i1 = i0 + 1;
                y[i0] = x[i0] * c - x[i1] * s;
                y[i1] = x[i0] * s + x[i1] * c;
            }
        return y;
    }

    private static double[] HalfRope(double[] x, int pos, double theta)
    {
        var y = (double[])x.Clone();
        int r = HeadDim / 2;
        for (int h = 0; h < x.Length / HeadDim; h++)
            for (int j = 0; j < r; j++)
            {
                double a = pos * Math.Pow(theta, -2.0 * j / HeadDim), c = Math.Cos(a), s = Math.Sin(a);
                int i0 = h * HeadDim + j, i1 = i0 + r;
                y[i0] = x[i0] * c - x[i1] * s;   // x·cos + rotate_half(x)·sin, first half
                y[i1] = x[i1] * c + x[i0] * s;   // second half
            }
        return y;
    }

    private static double[] MatVec(float[] w, double[] h)
    {
        var y = new double[w.Length / h.Length];
        for (int i = 0; i < y.Length; i++)
            for (int k = 0; k < h.Length; k++) y[i] += w[i * h.Length + k] * h[k];
        return y;
    }

    private static float[] Random(int n, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
    }

    private static LazyTensor Tensor(float[] data, params long[] shape) => LazyTensor.FromArray(data, new Shape(shape), "test");

    [Fact]
    public void Permutation_is_transformers_view_transpose_reshape()
    {
        var w = Random(Heads * HeadDim * Dim, 1);
        var p = LlamaWeightLayout.PermuteInterleavedToHalf(Tensor(w, Heads * HeadDim, Dim), Heads, HeadDim).ToFloat32();
        // w.view(H, hd/2, 2, dim).transpose(1, 2).reshape(H*hd, dim): out[h, c, j, :] = in[h, j, c, :].
        for (int h = 0; h < Heads; h++)
            for (int c = 0; c < 2; c++)
                for (int j = 0; j < HeadDim / 2; j++)
                    for (int k = 0; k < Dim; k++)
                        Assert.Equal(w[(((h * (HeadDim / 2)) + j) * 2 + c) * Dim + k], p[(((h * 2) + c) * (HeadDim / 2) + j) * Dim + k]);
    }

    [Fact]
    public void Half_rotation_of_permuted_rows_equals_permuted_interleaved_rotation()
    {
        var w = Random(Heads * HeadDim * Dim, 2);
        var h = Random(Dim, 3).Select(x => (double)x).ToArray();
        var wp = LlamaWeightLayout.PermuteInterleavedToHalf(Tensor(w, Heads * HeadDim, Dim), Heads, HeadDim).ToFloat32();
        foreach (var pos in new[] { 0, 1, 7, 300 })
        {
            var interleaved = InterleavedRope(MatVec(w, h), pos, 10000);
            var half = HalfRope(MatVec(wp, h), pos, 10000);
            for (int head = 0; head < Heads; head++)
                for (int c = 0; c < 2; c++)
                    for (int j = 0; j < HeadDim / 2; j++)
                        Assert.Equal(interleaved[head * HeadDim + 2 * j + c], half[head * HeadDim + c * HeadDim / 2 + j], 12);
        }
    }

    [Fact]
    public void Attention_scores_are_unchanged_by_the_permutation_and_differ_without_it()
    {
        var wq = Random(Heads * HeadDim * Dim, 4);
        var wk = Random(Heads * HeadDim * Dim, 5);
        var x1 = Random(Dim, 6).Select(x => (double)x).ToArray();
        var x2 = Random(Dim, 7).Select(x => (double)x).ToArray();
        var pq = LlamaWeightLayout.PermuteInterleavedToHalf(Tensor(wq, Heads * HeadDim, Dim), Heads, HeadDim).ToFloat32();
        var pk = LlamaWeightLayout.PermuteInterleavedToHalf(Tensor(wk, Heads * HeadDim, Dim), Heads, HeadDim).ToFloat32();
        double Score(double[] q, double[] k, int head) => Enumerable.Range(head * HeadDim, HeadDim).Sum(i => q[i] * k[i]);
        double maxUnpermutedDiff = 0;
        for (int head = 0; head < Heads; head++)
        {
            var reference = Score(InterleavedRope(MatVec(wq, x1), 5, 10000), InterleavedRope(MatVec(wk, x2), 2, 10000), head);
            Assert.Equal(reference, Score(HalfRope(MatVec(pq, x1), 5, 10000), HalfRope(MatVec(pk, x2), 2, 10000), head), 12);
            maxUnpermutedDiff = Math.Max(maxUnpermutedDiff, Math.Abs(reference - Score(HalfRope(MatVec(wq, x1), 5, 10000), HalfRope(MatVec(wk, x2), 2, 10000), head)));
        }
        Assert.True(maxUnpermutedDiff > 1e-3, $"half rotation on unpermuted rows should differ, max diff {maxUnpermutedDiff}");
    }

    [Fact]
    public void Bias_vectors_are_permuted_like_rows()
    {
        var b = Enumerable.Range(0, Heads * HeadDim).Select(i => (float)i).ToArray();
        var p = LlamaWeightLayout.PermuteInterleavedToHalf(Tensor(b, Heads * HeadDim), Heads, HeadDim).ToFloat32();
        Assert.Equal(new float[] { 0, 2, 4, 6, 1, 3, 5, 7 }, p.AsSpan(0, 8).ToArray());
        Assert.Equal(new float[] { 16, 18, 20, 22, 17, 19, 21, 23 }, p.AsSpan(16, 8).ToArray());
    }

    [Fact]
    public void Rows_not_matching_heads_throw_naming_the_origin()
    {
        var e = Assert.Throws<CheckpointFormatException>(() => LlamaWeightLayout.PermuteInterleavedToHalf(Tensor(new float[20], 4, 5), Heads, HeadDim));
        Assert.Contains("test", e.Message);
    }

    [Fact]
    public void Hugging_face_layout_is_left_alone()
    {
        var t = Tensor(Random(Heads * HeadDim * Dim, 8), Heads * HeadDim, Dim);
        Assert.Same(t, LlamaWeightLayout.ToHuggingFace(t, Heads, HeadDim, WeightLayout.HuggingFace));
    }
}
