// A console chat with any causal LM Hub supports. Default: the hub repo karpathy/tinyllamas, folder stories260K
// (a real 260K-parameter llama2.c model trained on TinyStories). Without internet, serve a mirror and point
// HF_ENDPOINT at it (see README.md).
//
//   dotnet run --project samples/Chat [-- <repo id or folder> [--subfolder S] [--system TEXT] [--max-new-tokens N] [--ai]]
//
// --ai runs the same chat through Microsoft.Extensions.AI's IChatClient (model.AsChatClient()): the caller keeps the
// history and sends it whole each turn; Hub reuses the KV cache of the previous turn, so only the new tokens are fed.
using Hub;
using Hub.Generation;
using Microsoft.Extensions.AI;

string model = "karpathy/tinyllamas";
string? subfolder = null, system = null;
int maxNew = 128;
bool explicitModel = false, extensionsAi = false;
const string Usage = "usage: dotnet run --project samples/Chat [-- <repo id or folder> [--subfolder S] [--system TEXT] [--max-new-tokens N] [--ai]]";
for (int i = 0; i < args.Length; i++)
{
    // An option's value is the next argument; a missing or malformed one is a usage error, not a stack trace.
    string Value(string option)
    {
        if (i + 1 >= args.Length) { Console.Error.WriteLine($"error: {option} needs a value\n{Usage}"); Environment.Exit(2); }
        return args[++i];
    }
    switch (args[i])
    {
        case "--subfolder": subfolder = Value("--subfolder"); break;
        case "--system": system = Value("--system"); break;
        case "--max-new-tokens":
            if (!int.TryParse(Value("--max-new-tokens"), System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out maxNew) || maxNew < 1)
            { Console.Error.WriteLine($"error: --max-new-tokens needs a positive integer, got '{args[i]}'\n{Usage}"); return 2; }
            break;
        case "--ai": extensionsAi = true; break;
        default:
            if (args[i].StartsWith("--", StringComparison.Ordinal)) { Console.Error.WriteLine($"error: unknown option {args[i]}\n{Usage}"); return 2; }
            model = args[i]; explicitModel = true; break;
    }
}
if (!explicitModel) subfolder ??= "stories260K";

try
{
    Console.Error.WriteLine($"loading {model}{(subfolder is null ? "" : "/" + subfolder)} ...");
    using var lm = CausalLM.FromPretrained(model, export: true, new ModelOptions { Subfolder = subfolder });
    if (!extensionsAi) return ChatConsole.RunConsole(lm, new GenerationConfig { MaxNewTokens = maxNew }, system);

    IChatClient client = lm.AsChatClient();
    var history = new List<ChatMessage>();
    if (system is not null) history.Add(new ChatMessage(ChatRole.System, system));
    var options = new ChatOptions { MaxOutputTokens = maxNew, Temperature = 0 };
    Console.WriteLine("Chatting through IChatClient. Empty line or end of input exits.");
    while (true)
    {
        Console.Write("> ");
        var line = Console.ReadLine();
        if (string.IsNullOrWhiteSpace(line)) return 0;
        history.Add(new ChatMessage(ChatRole.User, line));
        var updates = new List<ChatResponseUpdate>();
        await foreach (var update in client.GetStreamingResponseAsync(history, options))
        {
            Console.Write(update.Text);
            updates.Add(update);
        }
        var response = updates.ToChatResponse();
        history.AddMessages(response);
        Console.WriteLine();
        Console.WriteLine($"[{response.Usage?.OutputTokenCount} tokens, {response.FinishReason}, {response.Usage?.CachedInputTokenCount} of {response.Usage?.InputTokenCount} prompt tokens cached]");
    }
}
catch (HubException e)
{
    Console.Error.WriteLine($"error: {e.Message}");
    return 1;
}
