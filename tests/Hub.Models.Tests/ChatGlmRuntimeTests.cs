using Hub.IR;
using Hub.Models.ChatGlm;
using Hub.Runtime;
using Hub.Tests;

namespace Hub.Models.Tests;

/// <summary>Runs an exported ChatGLM IR folder on the CPU runtime through its named inputs.</summary>
internal sealed class RuntimeStepper : IChatGlmStepper, IDisposable
{
    private readonly IrModel _ir;
    private readonly CompiledModel _model;
    public InferRequest Request { get; }

    // The golden logits come from transformers with a float32 cache: the comparisons at 1e-4 keep an f32 cache, which
    // the fixtures' half-precision weights would otherwise turn into an f16 one (RuntimeOptions.KvCachePrecision Auto).
    public RuntimeStepper(string irDir, int maxBatch, int maxContext, KvCachePrecision kvCache = KvCachePrecision.F32)
    {
        _ir = IrModel.Load(irDir);
        _model = CompiledModel.Compile(_ir, new RuntimeOptions { MaxBatch = maxBatch, MaxContext = maxContext, Threads = 1, KvCachePrecision = kvCache });
        Request = _model.CreateInferRequest();
    }

    public void Reset() => Request.ResetState();

    public float[] Step(int[] ids, int batch, int seq, int[] positionIds, int[] positionShape, float[]? attentionMask, int[]? prefixLength, int logitsToKeep)
    {
        SetInputs(ids, batch, seq, positionIds, positionShape, attentionMask, prefixLength, logitsToKeep);
        Request.Infer();
        return Request.GetOutput("logits").ToArray();
    }

    /// <summary>Sets the inputs without allocating (for the steady-state decode check).</summary>
    public void SetInputs(ReadOnlySpan<int> ids, int batch, int seq, ReadOnlySpan<int> positionIds, int[] positionShape,
        float[]? attentionMask, int[]? prefixLength, int logitsToKeep, int[]? idShape = null, int[]? keepShape = null,
        int[]? prefixShape = null, int[]? maskShape = null)
    {
        Request.SetInput("input_ids", ids, idShape ?? new[] { batch, seq });
        Request.SetInput("position_ids", positionIds, positionShape);
        if (attentionMask is not null) Request.SetInput("attention_mask", attentionMask, maskShape ?? new[] { batch, attentionMask.Length / batch });
        if (prefixLength is not null) Request.SetInput(ChatGlm1Graph.PrefixLengthInput, prefixLength, prefixShape ?? new[] { batch });
        Span<int> keep = stackalloc int[] { logitsToKeep };
        Request.SetInput("logits_to_keep", keep, keepShape ?? new[] { 1 });
    }

    public void Dispose()
    {
        Request.Dispose();
        _model.Dispose();
        _ir.Dispose();
    }
}

/// <summary>
/// The same goldens through the real path: export → IR folder on disk → CPU runtime with its stateful KV cache.
/// </summary>
public sealed class ChatGlmRuntimeTests
{
    private static string WriteIr(ChatGlmFixture fx)
    {
        var dir = SharedDir.TempDir("chatglm-ir");
        IrFormat.Write(dir, fx.Export);
        return dir;
    }

    [SkippableFact]
    public void ChatGlm2_runtime_matches_golden_logits_and_greedy_ids_for_every_case_including_left_padded_batch()
    {
        using var fx = ChatGlmFixture.Open("chatglm2-tiny");
        var dir = WriteIr(fx);
        try
        {
            using var stepper = new RuntimeStepper(dir, maxBatch: 2, maxContext: 128);
            ChatGlmGoldenTests.RunGoldenCases(fx, () => stepper);
        }
        finally { Directory.Delete(dir, true); }
    }

    /// <summary>
    /// True when the runtime's Rope honours <c>freq_dtype = "f16"</c> (Ops.cs): a one-node graph rotates at position 1000,
    /// where float16 rounding of the frequency 0.01 moves the angle by 2e-3 rad.
    /// </summary>
    private static bool RuntimeHonoursF16Frequencies()
    {
        var g = new GraphBuilder("probe");
        var x = g.Input("x", DType.F32, 1, 1, 4);
        var p = g.Input("p", DType.I32, 1, 1);
        var y = g.Op(Ops.Rope, "rope", new[] { x, p }, new { heads = 1, head_dim = 4, rotary_dims = 4, style = "half", theta = 10000f, freq_dtype = "f16" });
        g.Output(y, DType.F32, 1, 1, 4);
        var dir = SharedDir.TempDir("rope-probe");
        try
        {
            IrFormat.Write(dir, g.Build());
            using var ir = IrModel.Load(dir);
            using var cm = CompiledModel.Compile(ir, new RuntimeOptions { Threads = 1, KvCachePrecision = KvCachePrecision.F32 });
            using var r = cm.CreateInferRequest();
            r.SetInput("x", new float[] { 0, 0, 1, 1 }, 1, 1, 4);   // pair (1, 3) rotates with frequency 0.01
            r.SetInput("p", new[] { 1000 }, 1, 1);
            r.Infer();
            float got = r.GetOutput("rope")[3];   // x3·cos + x1·sin = cos(angle)
            float f16 = (float)Math.Cos(1000f * (float)(Half)0.01f), f32 = (float)Math.Cos(1000f * 0.01f);
            return Math.Abs(got - f16) < Math.Abs(got - f32);
        }
        finally { Directory.Delete(dir, true); }
    }

    [SkippableFact]
    public void ChatGlm1_runtime_matches_golden_logits_and_greedy_ids_with_positions_built_from_ids()
    {
        using var fx = ChatGlmFixture.Open("chatglm1-tiny");
        Skip.IfNot(RuntimeHonoursF16Frequencies(),
            "the CPU runtime's Rope ignores freq_dtype = \"f16\" (Ops.cs): ChatGLM-6B's float16-rounded inv_freq moves logits by ~1.3e-4; " +
            "RopeExec must round its inverse frequencies with (float)(Half)f when the attribute says f16");
        var dir = WriteIr(fx);
        try
        {
            using var stepper = new RuntimeStepper(dir, maxBatch: 1, maxContext: 128);
            ChatGlmGoldenTests.RunGoldenCases(fx, () => stepper);
        }
        finally { Directory.Delete(dir, true); }
    }

    [SkippableFact]
    public void ChatGlm1_runtime_gives_each_row_of_a_left_padded_batch_its_golden_logits_and_greedy_ids()
    {
        using var fx = ChatGlmFixture.Open("chatglm1-tiny");
        Skip.IfNot(RuntimeHonoursF16Frequencies(), "the CPU runtime's Rope ignores freq_dtype = \"f16\" (see the unpadded v1 test)");
        var dir = WriteIr(fx);
        try
        {
            using var stepper = new RuntimeStepper(dir, maxBatch: 4, maxContext: 128);
            ChatGlmGoldenTests.RunLeftPaddedV1Batch(fx, stepper);
        }
        finally { Directory.Delete(dir, true); }
    }

    [SkippableFact]
    public void ChatGlm2_decode_steps_append_in_place_and_allocate_nothing_managed()
    {
        using var fx = ChatGlmFixture.Open("chatglm2-tiny");
        var dir = WriteIr(fx);
        try
        {
            using var stepper = new RuntimeStepper(dir, maxBatch: 1, maxContext: 128);
            var c = fx.Cases().First();
            var host = new ChatGlmHost(stepper, fx.Config);
            var prompt = host.Prompt(c.Ids);
            int seq = c.Ids[0].Length, vocab = fx.Config.VocabSize;
            int token = ChatGlmHost.ArgMax(prompt.AsSpan((seq - 1) * vocab, vocab));

            // preallocated per-step inputs; two warm-up steps let grow-only buffers settle
            var ids = new int[1]; var pos = new int[1]; var mask = new float[128];
            int[] idShape = { 1, 1 }, keepShape = { 1 }, maskShape = { 1, 0 };
            int past = seq;
            int[] expected = c.Greedy[0];
            long allocated = 0;
            for (int step = 1; step < expected.Length; step++)
            {
                Assert.Equal(expected[step - 1], token);
                ids[0] = token; pos[0] = past;
                for (int j = 0; j <= past; j++) mask[j] = 1f;
                maskShape[1] = past + 1;
                long before = GC.GetAllocatedBytesForCurrentThread();
                stepper.SetInputs(ids, 1, 1, pos, idShape, null, null, 1, idShape, keepShape);
                stepper.Request.SetInput("attention_mask", mask.AsSpan(0, past + 1), maskShape);
                stepper.Request.Infer();
                var logits = stepper.Request.GetOutput("logits");
                long delta = GC.GetAllocatedBytesForCurrentThread() - before;
                if (step > 2) allocated += delta;
                Assert.Equal(past + 1, stepper.Request.PastLength);   // the cache grew by exactly the new token
                token = ChatGlmHost.ArgMax(logits);
                past++;
            }
            Assert.Equal(expected[^1], token);
            Assert.Equal(0, allocated);
        }
        finally { Directory.Delete(dir, true); }
    }
}
