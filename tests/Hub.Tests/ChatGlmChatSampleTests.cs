using System.Text.Json.Nodes;
using Hub.Generation;
using Hub.Generation.Chat;
using Hub.Tests;

namespace Hub.Integration.Tests;

/// <summary>What samples/Chat does with a ChatGLM2 folder: the format is picked from the model, the prompt ids are THUDM's.</summary>
public sealed class ChatGlmChatSampleTests : IDisposable
{
    private readonly string _cache = SharedDir.TempDir("hub-glmchat");

    public void Dispose() { try { Directory.Delete(_cache, true); } catch (IOException) { } }

    [SkippableFact]
    public void Chat_session_on_chatglm2_uses_the_chatglm2_format_with_golden_prompt_ids_and_runs_the_console_loop()
    {
        var dir = SharedDir.Require("fixtures/chatglm2-tiny");
        using var lm = CausalLM.FromPretrained(dir, export: true, new ModelOptions { ExportCacheDir = _cache, Threads = 2 });
        var session = new ChatSession(lm);
        Assert.IsType<ChatGlm2Format>(session.Format);

        var golden = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "golden.json")))!;
        int checkedCases = 0;
        foreach (var c in golden["chat_cases"]!.AsArray().Where(c => (string?)c!["format"] == "chatglm2"))
        {
            var messages = new List<ChatMessage>();
            foreach (var h in c!["history"]!.AsArray())
            {
                messages.Add(ChatMessage.User((string)h![0]!));
                messages.Add(ChatMessage.Assistant((string)h[1]!));
            }
            messages.Add(ChatMessage.User((string)c["query"]!));
            var prompt = session.Format.Build(messages);
            Assert.Equal((string?)c["prompt"], prompt.Text);
            Assert.Equal(Golden.Ints(c["ids"]), prompt.Ids);
            Assert.Contains(2, prompt.StopIds);   // eos
            checkedCases++;
        }
        Assert.Equal(2, checkedCases);

        // The console loop samples/Chat runs: two turns, each ends (eos or the token limit), the second reuses the cache.
        var output = new StringWriter();
        int code = ChatConsole.Run(lm, new StringReader("你好\n讲个笑话\n/exit\n"), output, new GenerationConfig { MaxNewTokens = 8 });
        Assert.Equal(0, code);
        var text = output.ToString();
        Assert.Contains("ChatGlm2Format", text);
        Assert.Equal(2, text.Split("tokens/s").Length - 1);
        Assert.Matches(@"reused [1-9]\d* cached tokens", text);
        Assert.EndsWith("bye" + Environment.NewLine, text);
    }
}
