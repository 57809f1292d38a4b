// A console chat with any causal LM Hub supports. Default: the hub repo karpathy/tinyllamas, folder stories260K
// (a real 260K-parameter llama2.c model trained on TinyStories). Without internet, serve a mirror and point
// HF_ENDPOINT at it (see README.md).
//
//   dotnet run --project samples/Chat [-- <repo id or folder> [--subfolder S] [--system TEXT] [--max-new-tokens N]]
using Hub;
using Hub.Generation;

string model = "karpathy/tinyllamas";
string? subfolder = null, system = null;
int maxNew = 128;
bool explicitModel = false;
for (int i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--subfolder": subfolder = args[++i]; break;
        case "--system": system = args[++i]; break;
        case "--max-new-tokens": maxNew = int.Parse(args[++i], System.Globalization.CultureInfo.InvariantCulture); break;
        default: model = args[i]; explicitModel = true; break;
    }
}
if (!explicitModel) subfolder ??= "stories260K";

try
{
    Console.Error.WriteLine($"loading {model}{(subfolder is null ? "" : "/" + subfolder)} ...");
    using var lm = CausalLM.FromPretrained(model, export: true, new ModelOptions { Subfolder = subfolder });
    return ChatConsole.Run(lm, Console.In, Console.Out, new GenerationConfig { MaxNewTokens = maxNew }, system);
}
catch (HubException e)
{
    Console.Error.WriteLine($"error: {e.Message}");
    return 1;
}
