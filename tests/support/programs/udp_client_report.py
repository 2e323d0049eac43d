from socket import *

serverName = '127.0.0.1'
serverPort = 8081
clientSocket = socket(AF_INET, SOCK_DGRAM)
while True:
    try:
        message = input('>> ').strip()
    except EOFError:
        break
    clientSocket.sendto(message.encode(), (serverName, serverPort))
    modifiedMessage, serverAddress = clientSocket.recvfrom(1024)
    print(modifiedMessage.decode(), serverAddress)
clientSocket.close()
