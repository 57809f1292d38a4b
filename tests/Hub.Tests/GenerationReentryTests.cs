using Hub.Generation;

namespace Hub.Integration.Tests;

/// <summary>
/// Generating on a model from inside its own running generation (streaming loop, text callback) throws
/// <see cref="GenerationReentryException"/> instead of deadlocking; other callers still wait their turn. Every test runs
/// under a generous timeout so a regression (a deadlock) fails instead of hanging the run.
/// </summary>
public class GenerationReentryTests(ChatModels models) : IClassFixture<ChatModels>
{
    private const string Stories = "models/karpathy/tinyllamas/stories260K";
    private static readonly TimeSpan Deadlock = TimeSpan.FromMinutes(2);
    private static readonly GenerationConfig Short = new() { MaxNewTokens = 8 };

    private static Task Bounded(Func<Task> body) => Task.Run(body).WaitAsync(Deadlock);

    [SkippableFact]
    public async Task Generate_inside_the_models_own_streaming_loop_throws_instead_of_deadlocking()
    {
        var lm = models.Get(Stories);
        await Bounded(async () =>
        {
            int pieces = 0;
            await foreach (var _ in lm.GenerateStreamAsync("Once upon a time", Short))
            {
                pieces++;
                var e = Assert.Throws<GenerationReentryException>(() => lm.Generate("The cat", Short));
                Assert.Contains(lm.Directory, e.Message);
                Assert.Contains("finish or dispose the running generation first", e.Message);
                Assert.IsAssignableFrom<InvalidOperationException>(e);
            }
            Assert.True(pieces > 0);
            // The gate is free and this flow no longer holds it once the loop is over.
            Assert.NotEmpty(lm.Generate([1, 2, 3], Short));
        });
    }

    [SkippableFact]
    public async Task A_second_stream_started_inside_the_loop_throws_at_its_first_move()
    {
        var lm = models.Get(Stories);
        await Bounded(async () =>
        {
            await foreach (var _ in lm.GenerateStreamAsync("Once", Short))
            {
                await Assert.ThrowsAsync<GenerationReentryException>(async () =>
                {
                    await foreach (var __ in lm.GenerateStreamAsync("Twice", Short)) { }
                });
                // The refused stream left this flow marked as the outer stream's: still refused, not a deadlock.
                Assert.Throws<GenerationReentryException>(() => lm.Generate([1, 2], Short));
                break; // leaving early disposes the stream and releases the gate
            }
            await foreach (var _ in lm.GenerateStreamAsync("Thrice", Short)) { }
        });
    }

    [SkippableFact]
    public async Task Generate_from_a_chat_text_callback_throws_instead_of_deadlocking()
    {
        var lm = models.Get(Stories);
        await Bounded(() =>
        {
            var chat = new ChatSession(lm);
            Assert.Throws<GenerationReentryException>(() => chat.Send("Hello", Short, onText: _ => lm.Generate([1, 2], Short)));
            Assert.NotEmpty(lm.Generate([1, 2], Short)); // released after the failed call
            return Task.CompletedTask;
        });
    }

    [SkippableFact]
    public async Task A_caller_from_another_flow_waits_for_the_stream_instead_of_throwing()
    {
        var lm = models.Get(Stories);
        await Bounded(async () =>
        {
            var streaming = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            // Started before the stream, so it is not part of the streaming flow: it must wait, not throw.
            var other = Task.Run(async () =>
            {
                await streaming.Task;
                return lm.Generate([1, 5, 9], Short);
            });
            await foreach (var _ in lm.GenerateStreamAsync("Once", Short)) streaming.TrySetResult();
            Assert.NotEmpty(await other);
        });
    }
}
