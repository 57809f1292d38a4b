namespace Hub.Runtime.Tests;

/// <summary>Disposing a compiled model while its requests run on other threads never frees memory under them.</summary>
public class ModelDisposeTests
{
    private static void Feed(InferRequest req, int t)
    {
        var ids = Enumerable.Range(0, t).Select(i => i * 7 % 99).ToArray();
        req.SetInput("input_ids", ids, 1, t);
        req.SetInput("positions", Enumerable.Range(0, t).ToArray(), 1, t);
        req.SetInput("attention_mask", Enumerable.Repeat(1f, t).ToArray(), 1, t);
        req.SetInput("logits_to_keep", new[] { 1 }, 1);
    }

    [Fact]
    public void Dispose_waits_for_an_infer_in_progress_and_later_infers_throw_ObjectDisposed()
    {
        using var tm = new TinyModel();
        using var ir = tm.Build();
        var cm = CompiledModel.Compile(ir, new RuntimeOptions { Threads = 2, MaxContext = 32 });
        using var req = cm.CreateInferRequest();
        Feed(req, 5);
        req.Infer();
        Task dispose;
        // An Infer holds the model's infer lock for its whole run: while it is held, Dispose must not complete.
        lock (cm.InferLock)
        {
            dispose = Task.Run(cm.Dispose);
            Assert.False(dispose.Wait(200), "Dispose completed while an Infer held the model");
        }
        Assert.True(dispose.Wait(TimeSpan.FromSeconds(30)));
        req.ResetState();
        Feed(req, 5);
        var e = Assert.Throws<ObjectDisposedException>(req.Infer);
        Assert.Contains(nameof(CompiledModel), e.ObjectName);
        Assert.Throws<ObjectDisposedException>(() => cm.CreateInferRequest());
        cm.Dispose(); // idempotent
    }

    [Fact]
    public void Infers_racing_a_dispose_on_another_thread_finish_correctly_or_throw_ObjectDisposed()
    {
        using var tm = new TinyModel { D = 48, F = 96, V = 99 };
        using var ir = tm.Build(5);
        for (int trial = 0; trial < 5; trial++)
        {
            var cm = CompiledModel.Compile(ir, new RuntimeOptions { Threads = 2, MaxContext = 32, PackWeightsMaxBytes = 1 << 24 });
            using var req = cm.CreateInferRequest();
            Feed(req, 12); // a 12-row prefill takes the GEMM path, which uses the model's packed weights
            req.Infer();
            var expected = req.GetOutput("logits").ToArray();
            int completed = 0;
            Exception? failure = null;
            using var started = new ManualResetEventSlim();
            var loop = new Thread(() =>
            {
                try
                {
                    while (true)
                    {
                        req.ResetState();
                        Feed(req, 12);
                        started.Set();
                        req.Infer();
                        var got = req.GetOutput("logits");
                        for (int i = 0; i < expected.Length; i++)
                            if (got[i] != expected[i]) throw new InvalidOperationException($"logit {i}: {got[i]} != {expected[i]} after {completed} runs");
                        completed++;
                    }
                }
                catch (ObjectDisposedException) { }
                catch (Exception ex) { failure = ex; }
            });
            loop.Start();
            started.Wait();
            Thread.Sleep(trial);
            cm.Dispose();
            Assert.True(loop.Join(TimeSpan.FromSeconds(30)));
            Assert.Null(failure);
        }
    }
}
