Console.WriteLine("chat");
