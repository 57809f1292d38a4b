using Hub.Generation;
using Hub.Tests;

namespace Hub.Integration.Tests;

/// <summary>The console chat loop on real models (driven through reader/writer, as a terminal would).</summary>
public class ChatTests : IDisposable
{
    private readonly string _tmp = SharedDir.TempDir("hub-chat");

    public void Dispose() { try { Directory.Delete(_tmp, true); } catch (IOException) { } }

    [SkippableTheory]
    [InlineData("models/karpathy/tinyllamas/stories260K")]
    [InlineData("fixtures/gpt2-tiny")]
    public void Console_chat_answers_streams_resets_and_exits(string model)
    {
        var dir = SharedDir.Require(model);
        using var lm = CausalLM.FromPretrained(dir, export: true, new ModelOptions { ExportCacheDir = _tmp });
        var output = new StringWriter();
        int code = ChatConsole.Run(lm, new StringReader("Once upon a time\nWhat next?\n/reset\nHello\n/exit\n"), output, new GenerationConfig { MaxNewTokens = 12 });
        var text = output.ToString();
        Assert.Equal(0, code);
        Assert.Equal(3, text.Split("tokens/s").Length - 1);
        Assert.Contains("[conversation reset]", text);
        Assert.EndsWith("bye" + Environment.NewLine, text);
        Assert.Matches(@"reused [1-9]\d* cached tokens", text); // the second turn reused the first turn's cache
    }
}
